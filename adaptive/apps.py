from django.apps import AppConfig


class AdaptiveConfig(AppConfig):
    name = "adaptive"
    verbose_name = "Adaptive models"
    default_auto_field = "django.db.models.BigAutoField"
