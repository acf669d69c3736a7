"""A person at a headless Chromium: pages visited, keys pressed, what has the focus, and a
screenshot of every step.

Keys go through WebDriver's actions to whatever has the focus, as a keyboard's would, and
clicks are WebDriver's, at the element: nothing here clicks, focuses or fills in by script.
A screenshot takes the whole page through the DevTools protocol, beyond the window's height.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

T = TypeVar("T")
WINDOW = (1280, 1000)


def start_chromium(chromium: str, chromedriver: str) -> webdriver.Chrome:
    """Headless Chromium driven by the chromedriver given: with both paths named, Selenium
    has nothing to look up or download."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        # Root in a container has no user namespace for the sandbox; /dev/shm may be tiny.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    return driver


class Browser:
    """One Chromium window on the marketplace at ``base_url``; screenshots in ``artefacts``."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, artefacts: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.artefacts = artefacts
        self.steps = 0

    # --- where it is ----------------------------------------------------------------------
    def visit(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        url = self.driver.current_url
        return url.removeprefix(self.base_url) if url.startswith(self.base_url) else url

    def wait_for_path(self, pattern: str, within: float = 15.0) -> re.Match[str]:
        """Until the address is ``pattern`` (a regular expression on the path and query)."""
        self.until(lambda: re.fullmatch(pattern, self.path), within, f"a page at {pattern}")
        found = re.fullmatch(pattern, self.path)
        assert found is not None
        return found

    # --- what is on the page --------------------------------------------------------------
    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found = self.find_all(css)
        return found[0].text.strip() if found else ""

    def link(self, text: str) -> WebElement:
        return self.driver.find_element(By.LINK_TEXT, text)

    def button(self, text: str) -> WebElement:
        for button in self.find_all("button"):
            if button.text.strip() == text:
                return button
        raise AssertionError(f"no button {text!r} on {self.path}")

    def until(self, check: Callable[[], T], within: float = 15.0, what: str = "") -> T:
        """Ask ``check`` until it gives something truthy; a page replaced under it is asked
        again rather than failing."""

        def ask(_: Any) -> T | bool:
            try:
                return check()
            except StaleElementReferenceException:
                return False

        message = f"no {what or 'such state'} within {within} s on {self.path}"
        result: T = WebDriverWait(self.driver, within, poll_frequency=0.1).until(ask, message)
        return result

    def wait_for_reload(self, within: float) -> None:
        """Until the page has been replaced by a new load of itself (a refresh it asked for)."""
        page = self.find("html")
        WebDriverWait(self.driver, within, poll_frequency=0.1).until(
            expected_conditions.staleness_of(page),
            f"the page at {self.path} did not load again within {within} s",
        )
        self.until(lambda: self.find("main"), within, "page after the reload")

    # --- the keyboard ---------------------------------------------------------------------
    def press(self, *keys: str) -> None:
        """Keys, in turn, to whatever has the focus."""
        actions = ActionChains(self.driver)
        for key in keys:
            actions.send_keys(key)
        actions.perform()

    def type(self, text: str) -> None:
        ActionChains(self.driver).send_keys(text).perform()

    def shift_tab(self) -> None:
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(
            Keys.SHIFT
        ).perform()

    def focused(self) -> WebElement:
        return self.driver.switch_to.active_element

    def focused_name(self) -> str:
        """The focused element's accessible name, as a screen reader would announce it."""
        return self.focused().accessible_name.strip()

    def tab_to(self, name: str, most: int = 40) -> list[str]:
        """Press Tab until the element named ``name`` has the focus; the names of the stops on
        the way, that one last."""
        stops: list[str] = []
        for _ in range(most):
            self.press(Keys.TAB)
            stops.append(self.focused_name())
            if stops[-1] == name:
                return stops
        raise AssertionError(f"{name!r} never had the focus in {most} Tabs: {stops}")

    # --- records --------------------------------------------------------------------------
    def shot(self, step: str) -> Path:
        """A screenshot of the whole page, numbered in the order of the steps."""
        self.steps += 1
        slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = self.artefacts / f"{self.steps:02d}-{slug}.png"
        path.write_bytes(self._whole_page_png())
        return path

    def _whole_page_png(self) -> bytes:
        try:
            size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip = {
                "x": 0,
                "y": 0,
                "width": max(size["width"], 1),
                "height": min(max(size["height"], 1), 8000),
                "scale": 1,
            }
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True, "clip": clip},
            )
            return base64.b64decode(shot["data"])
        except (WebDriverException, KeyError):
            return self.driver.get_screenshot_as_png()

    def keep_failure(self, colony_log: Path | None) -> None:
        """What a failed test leaves to look at: the page as it was, its source, and the end
        of the marketplace's log."""
        try:
            self.shot("failure")
            (self.artefacts / "page.html").write_text(self.driver.page_source)
            (self.artefacts / "url.txt").write_text(self.driver.current_url + "\n")
        except WebDriverException as exc:
            (self.artefacts / "browser-error.txt").write_text(repr(exc))
        if colony_log is not None and colony_log.exists():
            shutil.copyfile(colony_log, self.artefacts / "colony.log")
