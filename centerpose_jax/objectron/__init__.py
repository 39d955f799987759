"""Google's Objectron release into the CenterPose dataset format, without TensorFlow.

  release.py   where things are in a local copy of the `objectron` bucket
  sequence.py  annotation files (one `Sequence` message each) as annotated frames
  video.py     decoding chosen video frames (OpenCV) in the annotations' orientation
  records.py   records_shuffled tf.train.Examples as annotated frames; tfrecord.py reads the TFRecord files
  frames.py    one annotated frame and its CenterPose JSON label
  extras.py    NVlabs' manual labels: bad boxes, cups / mugs and the handle side, symmetric chairs
  convert.py   the conversion of a category and split: resumable, parallel, with a summary
  proto/       .proto copies of the messages read and their generated classes

tools/convert_objectron.py is the command line; docs/data-preparation.md the guide.
"""
