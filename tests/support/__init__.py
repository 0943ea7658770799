"""What the tests share that is not a fixture (fixtures live in the conftest.py files): the machine's
services, loopback servers, input builders, the product as real processes. Test modules import from
here, never from one another or from a conftest.py; the benchmarks (bench/) use the servers too."""
