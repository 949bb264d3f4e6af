"""Tests of handler.py. Run them with `python3 -m unittest` in this folder."""

import unittest

from handler import handle


class FakeContext:
    execution_id = "test-execution"
    trace_id = None
    timeout_ms = 10000

    def remaining_ms(self):
        return self.timeout_ms


class HandleTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(handle({"name": "Ada"}, FakeContext()), {"greeting": "hello, Ada"})

    def test_greets_the_world_without_a_name(self):
        self.assertEqual(handle({}, FakeContext()), {"greeting": "hello, world"})


if __name__ == "__main__":
    unittest.main()
