"""Test settings only: axes' backend, letting through the one caller that has no request."""

from axes.backends import AxesStandaloneBackend


class AxesBackendForTests(AxesStandaloneBackend):
    """django.test.Client.login() calls authenticate() without a request, which axes refuses
    outright. Every HTTP path (login form, admin, Basic) passes one and is checked as in
    production; only that request-less test helper is waved through."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
