from cvtune.hooks.cvtune import CvtuneHook

__all__ = ["CvtuneHook"]
