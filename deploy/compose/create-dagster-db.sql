CREATE DATABASE dagster OWNER imgpipe;
