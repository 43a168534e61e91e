"""What the fault hooks of :mod:`tests.worker_faults` react to, importable without patching."""

CHUNKS_KEY = "colorize-test:chunks"
HOLD_S = 1.0
POISON_MARK = "poison"
DECODER_CRASH_MARK = "crash-decoder"
HANG_MARK = "hang-forever"
MODEL_ERROR_MARK = "model-error"
SAVED_CRASH_MARK = "crash-after-save"
