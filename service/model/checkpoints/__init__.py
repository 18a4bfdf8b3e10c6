"""Shipped proxy checkpoints (.pt state_dict + .json manifest); a package so setuptools ships them."""
