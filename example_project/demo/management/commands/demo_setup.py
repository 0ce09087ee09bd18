from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo user (demo / demo, a superuser so the admin works) if missing."

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username="demo", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password("demo")
            user.save()
        self.stdout.write(
            self.style.SUCCESS(
                "Demo user: username 'demo', password 'demo'. "
                "Open http://127.0.0.1:8000/ and log in."
            )
        )
