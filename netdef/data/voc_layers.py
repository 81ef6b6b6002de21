"""FCN's Python data layers, answered by netdef's SegData reader, so that the published FCN
prototxts (fcn.berkeleyvision.org) run as they are:

    layer { name: "data" type: "Python" top: "data" top: "label"
      python_param { module: "voc_layers" layer: "VOCSegDataLayer"
        param_str: "{'voc_dir': '../data/pascal/VOC2011', 'seed': 1337, 'split': 'seg11valid',
                     'mean': (104.00699, 116.66877, 122.67892)}" } }

The module name voc_layers resolves here when the user has no voc_layers module of their own
(next to the prototxt or on sys.path; see netdef.data.python_layer). param_str keys, as
FCN defines them:
  VOCSegDataLayer   voc_dir: a PASCAL VOC directory (ImageSets/Segmentation/<split>.txt,
                    JPEGImages/<id>.jpg, SegmentationClass/<id>.png)
  SBDDSegDataLayer  sbdd_dir: an SBDD dataset directory (<split>.txt, img/<id>.jpg,
                    cls/<id>.mat, which needs scipy; cls/<id>.png is read if present)
  split (required), mean (B, G, R, required), randomize (default True), seed (default: from
  the solver's random_seed). One image per batch, at its own size: data (1, 3, H, W) BGR minus
  the mean, label (1, 1, H, W). As in FCN, only splits whose name contains 'train' are read in
  random order. One difference: FCN draws each image at random (with replacement); netdef
  walks a fresh random permutation per epoch, so that training can be resumed exactly.
Relative directories are taken relative to the prototxt's directory (or the working directory
when they exist only there). For everything else (batches, crops, mirroring, the synthetic
set) use type "SegData".
"""
from .seg_data import SegDataLayer
from .transform import layer_error, parse_param_str


class _FCNSegDataLayer(SegDataLayer):
    dir_key = None

    min_top = 2
    max_top = 2

    def param_dict(self):
        err = layer_error(self)
        p = parse_param_str(self.layer_param.python_param.param_str, err)
        known = {self.dir_key, "split", "mean", "randomize", "seed"}
        unknown = sorted(set(p) - known)
        if unknown:
            raise err(f"{type(self).__name__}: unknown param_str key(s) {', '.join(map(repr, unknown))}; "
                      f"known: {', '.join(sorted(known))}")
        for key in (self.dir_key, "split", "mean"):
            if key not in p:
                raise err(f"{type(self).__name__}: param_str needs '{key}'")
        split = str(p["split"])
        out = {self.dir_key: p[self.dir_key], "split": split, "mean": p["mean"],
               "shuffle": bool(p.get("randomize", True)) and "train" in split}
        if p.get("seed") is not None:
            out["seed"] = p["seed"]
        return out


class VOCSegDataLayer(_FCNSegDataLayer):
    """FCN's VOC reader (param_str: voc_dir, split, mean, randomize, seed)."""

    dir_key = "voc_dir"


class SBDDSegDataLayer(_FCNSegDataLayer):
    """FCN's SBDD reader (param_str: sbdd_dir, split, mean, randomize, seed)."""

    dir_key = "sbdd_dir"
