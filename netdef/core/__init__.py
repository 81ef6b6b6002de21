"""The core: prototxt -> NetParameter -> Net. The schema (netdef_pb2, generated from
protos/netdef.proto), the file formats (proto: prototxt, caffemodel, binaryproto), the graph
passes on a NetParameter (graph: upgrade, NetState filtering, Split insertion), and the Net
with its blobs (blob), layers' base class (layer), weight fillers (fillers), the diff pool
(memory) and the temporary files (tempfiles)."""
