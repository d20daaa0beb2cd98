"""headstart: should I reuse a pretrained model for my small labelled dataset, which way, and what does it save?

    import headstart
    res = headstart.run("data/xray", seeds=3)       # typed Results (headstart/app/api.py); docs/python-api.md
    res.recommended, res.arms["linear-probe"].accuracy, res.verdict()

`import headstart` stays light: torch, timm and Lightning load on the first call.
"""
__version__ = "0.1.0"
__all__ = ["run", "predict", "compare", "suggest", "Results", "Arm", "Difference"]


def __getattr__(name: str):
    if name in __all__:
        from headstart.app import api          # the public facade loads the application on first use
        return getattr(api, name)
    raise AttributeError(f"module 'headstart' has no attribute {name!r}")
