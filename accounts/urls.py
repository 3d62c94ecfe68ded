from django.urls import path

from accounts import views

urlpatterns = [
    path("app-registrations/<int:pk>/sign-in/", views.sign_in, name="accounts-sign-in"),
    path("sign-in/done/", views.sign_in_done, name="accounts-sign-in-done"),
]
