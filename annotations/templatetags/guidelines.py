from django import template

from annotations.services.markdown import markdown_to_html

register = template.Library()


@register.filter
def markdown(text: str):
    """``{{ audit.guidelines|markdown }}``: CommonMark with raw HTML escaped."""
    return markdown_to_html(text or "")
