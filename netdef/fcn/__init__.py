"""FCN tooling: net surgery (transplanting classifier weights, bilinear upsampling), the
segmentation metrics the FCN paper reports (metrics), and segmenting images with a deploy net
(segment, PASCAL VOC's colours)."""
