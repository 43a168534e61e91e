"""What the fault hooks of :mod:`tests.worker_faults` react to, importable without patching."""

from shared.settings import Settings

HOLD_S = 1.0
POISON_MARK = "poison"
DECODER_CRASH_MARK = "crash-decoder"
HANG_MARK = "hang-forever"
MODEL_ERROR_MARK = "model-error"
SAVED_CRASH_MARK = "crash-after-save"


def chunks_key(settings: Settings) -> str:
    """The Redis list on which workers with these settings announce each chunk they hold."""
    return f"{settings.redis_key_prefix}colorize-test:chunks"
