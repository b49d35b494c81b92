from django.apps import AppConfig


class AdaptiveConfig(AppConfig):
    name = "adaptive"
    verbose_name = "Adaptive models"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        if settings.TORCH_NUM_THREADS:
            import torch

            # Several web workers on few cores: one intra-op thread each avoids oversubscription.
            torch.set_num_threads(settings.TORCH_NUM_THREADS)
