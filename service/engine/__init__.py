"""Scoring without HTTP: Engine (engine.py) -> ScoringPipeline (pipeline.py) -> aggregation (responses.py,
aggregate.py). `from service.engine import Engine`."""


def __getattr__(name: str):
    if name == "Engine":  # lazy, so `from service.engine import aggregate` stays light and cycle-free
        from service.engine.engine import Engine

        return Engine
    raise AttributeError(name)
