from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_ARTICLES = [
    ("Getting started with ChatKit", "How the chat UI talks to a Django backend.", True),
    ("Uploading files", "Images, PDFs and text files become model input.", True),
    ("Dictation", "Speak instead of typing; OpenAI transcribes it.", True),
    ("Roadmap (draft)", "What comes next. Only its author can mention it.", False),
]


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
        # Articles to @-mention in the chat (published ones are visible to everyone).
        from example_project.demo.models import Article

        for title, summary, published in DEMO_ARTICLES:
            Article.objects.get_or_create(
                title=title,
                defaults={"author": user, "summary": summary, "published": published},
            )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo user: username 'demo', password 'demo'. "
                "Open http://127.0.0.1:8000/ and log in."
            )
        )
