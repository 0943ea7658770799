"""The app database: engine and migrations, models, and plain-function repositories over a Session."""
