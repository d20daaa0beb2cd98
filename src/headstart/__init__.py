"""headstart: should I reuse a pretrained model for my small labelled dataset, which way, and what does it save?"""
__version__ = "0.1.0"
