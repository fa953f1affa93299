"""Codec protocol and registry (see ``protocol`` and ``registry``)."""

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo
from benchmark.codecs.registry import available_codecs, create_codec, register_codec

__all__ = ["Codec", "CodecError", "CodecInfo", "available_codecs", "create_codec", "register_codec"]
