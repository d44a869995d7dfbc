"""Baselines: other models, trained and scored by mtbrain's one evaluator.

- :mod:`mtbrain.baselines.yolo`: an ultralytics YOLO detector (optional extra ``yolo``,
  ``pip install "mtbrain[yolo]"``). Importing the module does not import ultralytics; the
  functions that need it do, offline.
"""
