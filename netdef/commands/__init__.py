"""The `netdef` subcommands, one module each. A command module has

    HELP            one line, shown by `netdef -h` and at the top of `netdef CMD -h`
    configure(p)    adds its arguments to its argparse parser
    run(args)       does the work; returns the exit status (None means 0)

and raises NetdefError for bad input (cli.main prints it as `netdef CMD: error: ...`).
Only netdef.cli imports this package; the library never does.
"""
from . import (compute_image_mean, convert_imageset, draw, export_onnx, extract_features, import_onnx, info,
               parse_log, plot, run, segment, surgery, test, time, train, upgrade_net, upgrade_solver)

#: subcommand name -> module, in the order `netdef -h` lists them
COMMANDS = {
    "info": info,
    "train": train,
    "test": test,
    "surgery": surgery,
    "segment": segment,
    "draw": draw,
    "time": time,
    "parse-log": parse_log,
    "plot": plot,
    "run": run,
    "convert-imageset": convert_imageset,
    "compute-image-mean": compute_image_mean,
    "extract-features": extract_features,
    "upgrade-net": upgrade_net,
    "upgrade-solver": upgrade_solver,
    "export-onnx": export_onnx,
    "import-onnx": import_onnx,
}
