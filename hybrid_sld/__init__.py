"""hybrid-sld: scaling-law discovery. The estimator is ``hybrid_sld.ScalingLawRegressor`` (from
:mod:`hybrid_sld.api`), imported when first asked for: the command line, which does not use
it, starts without numpy's and the API's imports."""

__all__ = ["ScalingLawRegressor", "InputError", "NotFittedError"]


def __getattr__(name):
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():  # tab completion and dir() list the lazy names too
    return sorted({*globals(), *__all__})
