"""Request and response models: the HTTP contract other clients are written against, one module per resource."""
