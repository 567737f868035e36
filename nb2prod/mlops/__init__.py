"""From pipeline to production model: registration, promotion gates, data-drift profiles.

``gates`` and ``drift`` are pure; ``profile`` and ``registry.pack_model`` run in the stage's Ray worker;
``registry``'s logging and ``hooks`` run in the coordinator, the single MLflow writer of a run.
"""
