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
        _forget_credentials_on_change()

        if settings.TORCH_NUM_THREADS:
            import torch

            # Several web workers on few cores: one intra-op thread each avoids oversubscription.
            torch.set_num_threads(settings.TORCH_NUM_THREADS)


def _forget_credentials_on_change() -> None:
    """A key, token or user saved or deleted here, or a user's groups changed: this process forgets
    the credentials it remembered (adaptive.credential_cache), so the change holds at once here."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from adaptive import credential_cache
    from adaptive.models import ApiToken, IngestionKey

    user_model = get_user_model()
    for model in (IngestionKey, ApiToken, user_model):
        uid = f"adaptive.credentials.{model.__name__}"
        post_save.connect(credential_cache.clear_all, sender=model, dispatch_uid=f"{uid}.save")
        post_delete.connect(credential_cache.clear_all, sender=model, dispatch_uid=f"{uid}.delete")
    m2m_changed.connect(
        credential_cache.clear_all, sender=user_model.groups.through, dispatch_uid="adaptive.credentials.user_groups"
    )
