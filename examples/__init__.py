"""Worked examples (importable, tested): ``examples.my_codec_plugin:ExampleCodec``."""
