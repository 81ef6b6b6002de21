"""pycaffe's Python modules on netdef: io (caffe.io), classifier (Classifier, Detector),
net_spec (NetSpec, layers, params), coord_map, draw, and caffe_compat (the `caffe` alias that
`netdef run` installs for an unchanged `import caffe` script)."""
