"""The stages of the pipeline, each resumable and writing its outputs under an experiment folder.

- :mod:`~traitvec.stages.layout`: :class:`OutputLayout`, the one owner of every output path and file name;
- :mod:`~traitvec.stages.resume`: the inputs key and read-if-current helpers every stage uses to skip done work;
- :mod:`~traitvec.stages.vet`: scenario vetting (:func:`vet_trait`);
- :mod:`~traitvec.stages.extract`: activations → vectors → evaluation (:func:`extract_trait`);
- :mod:`~traitvec.stages.steer` (+ :mod:`~traitvec.stages.search`): the steering evaluation (:func:`run_steering_eval`);
- :mod:`~traitvec.stages.pipeline`: all of them per trait (:func:`run_pipeline`).

Nothing is imported here, so importing one stage does not load the others.
"""
