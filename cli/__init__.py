"""The click front end of geoglacier, installed as ``geoglacier.cli``."""
