"""Sample media k2probe makes itself: the checkout screenshot for the guide's first multimodal test."""

from __future__ import annotations

import io

CHECKOUT_PROMPT = ("Review this checkout UI for accessibility and frontend implementation risks. "
                   "Return a checklist.")


def checkout_screenshot(width: int = 1280, height: int = 800) -> bytes:
    """A PNG of a plausible checkout page, with the flaws a review should catch (placeholder-only labels,
    a low-contrast pay button, an error shown only in red)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "#f4f5f7")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 64), fill="#1f2937")
    draw.text((32, 22), "ACME Store - Checkout", fill="#ffffff")
    draw.rectangle((160, 110, 760, 700), fill="#ffffff", outline="#d1d5db")
    fields = ["Full name", "Email", "Card number", "MM/YY", "CVC", "Postcode"]
    for i, placeholder in enumerate(fields):
        top = 150 + i * 74
        draw.rectangle((200, top, 720, top + 48), fill="#ffffff", outline="#e5e7eb")
        draw.text((214, top + 16), placeholder, fill="#c0c4cc")  # placeholder only: no label
    draw.text((200, 600), "Card declined", fill="#ef4444")  # colour is the only signal
    draw.rectangle((200, 630, 720, 680), fill="#a5b4fc")
    draw.text((430, 648), "Pay $42.00", fill="#e0e7ff")  # low contrast
    draw.rectangle((820, 110, 1160, 420), fill="#ffffff", outline="#d1d5db")
    for i, (item, price) in enumerate([("Keyboard", "$30.00"), ("Cable", "$7.00"), ("Shipping", "$5.00")]):
        draw.text((850, 150 + i * 40), item, fill="#111827")
        draw.text((1080, 150 + i * 40), price, fill="#111827")
    draw.text((850, 300), "Total  $42.00", fill="#111827")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
