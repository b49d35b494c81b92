from django.apps import AppConfig


class AdaptiveConfig(AppConfig):
    name = "adaptive"
    verbose_name = "Adaptive models"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.backends.signals import connection_created

        from adaptive import checks, file_modes

        checks.register_checks()
        # The embedded SQLite database holds token hashes and every event: its owner's only.
        file_modes.note_existing_files()
        connection_created.connect(file_modes.restrict_sqlite_files, dispatch_uid="adaptive.private_sqlite")

        if settings.TORCH_NUM_THREADS:
            import torch

            # Several web workers on few cores: one intra-op thread each avoids oversubscription.
            torch.set_num_threads(settings.TORCH_NUM_THREADS)
