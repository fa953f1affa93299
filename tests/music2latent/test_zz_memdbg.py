from tests.music2latent.test_m2l_inference import _peak_mb
def test_x():
    print([_peak_mb("decode", 96), _peak_mb("decode", 1024), _peak_mb("whole", 1024)])
