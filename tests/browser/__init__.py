"""The storefront and the console in a real headless Chromium, against a marketplace started
with ``colony up``: a buyer's journey (the checkout by keyboard alone) and an admin's."""
