"""``{% first_run_steps as steps %}``: the first-run guide of the admin's home page."""

from __future__ import annotations

from typing import Any

from django import template

from connector.services.first_run import GuideStep, guide_steps

register = template.Library()


@register.simple_tag(takes_context=True)
def first_run_steps(context: dict[str, Any]) -> list[GuideStep]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return guide_steps(user)
