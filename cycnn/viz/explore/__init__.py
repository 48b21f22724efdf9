"""``cycnn explore``: a page on which a learner draws a digit and watches every layer of their own model respond.

``api`` has the routes (served by ``cycnn.viz.server``), ``analysis`` what is computed for one image (every
layer's output, saliency, Grad-CAM, occlusion, one unit's arithmetic), ``transform`` the sliders' and robustness
curves' perturbations, ``testset`` what is computed on the test set (picks, confusion matrix, curves, PCA map).
The page is ``cycnn/viz/static/explore.html`` with its script and style sheet.
"""
