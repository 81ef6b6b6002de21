"""Watching training: glog-style logging (glog), the training log file (logfile), parsing logs
(logparse), plotting them (plot), TensorBoard events (tensorboard) and timing (timing)."""
