"""Schedules follow Keras semantics at the 0-based step."""

from __future__ import annotations

import pytest

from bopsweep.errors import UserError
from bopsweep.trial.schedules import Schedule, parse_schedule

SPE = 50  # steps per epoch


def test_constant_schedule_keeps_the_start_value():
    assert Schedule().value(1e-7, 12345, SPE, 100) == 1e-7


def test_exponential_staircase_changes_exactly_at_each_period():
    s = Schedule(kind="exponential", rate=0.1, every=100)
    last_of_first_period = 100 * SPE - 1
    assert s.value(1e-4, 0, SPE, 350) == 1e-4
    assert s.value(1e-4, last_of_first_period, SPE, 350) == 1e-4
    assert s.value(1e-4, last_of_first_period + 1, SPE, 350) == pytest.approx(1e-5)
    assert s.value(1e-4, 300 * SPE, SPE, 350) == pytest.approx(1e-7)


def test_exponential_rate_above_one_increases():
    s = Schedule(kind="exponential", rate=10, every=2)
    assert [s.value(1e-6, e * SPE, SPE, 10) for e in (0, 1, 2, 4)] == pytest.approx(
        [1e-6, 1e-6, 1e-5, 1e-4]
    )


def test_exponential_smooth_decays_within_the_period():
    s = Schedule(kind="exponential", rate=0.01, every=2, staircase=False)
    assert s.value(1.0, SPE, SPE, 10) == pytest.approx(0.1)  # half a period: 0.01^0.5


def test_polynomial_goes_from_start_to_end_then_stays():
    s = Schedule(kind="polynomial", end=1e-8, epochs=500)
    decay = 500 * SPE
    assert s.value(1e-5, 0, SPE, 500) == 1e-5
    assert s.value(1e-5, decay // 2, SPE, 500) == pytest.approx((1e-5 + 1e-8) / 2)
    assert s.value(1e-5, decay, SPE, 500) == pytest.approx(1e-8)
    assert s.value(1e-5, decay + 999, SPE, 500) == pytest.approx(1e-8)


def test_polynomial_increasing_with_power_two_and_whole_run_default():
    s = Schedule(kind="polynomial", end=1e-2, power=2)  # epochs=None: the whole run
    total = 10
    quarter = total * SPE // 4
    # end + (init − end)·(1 − 1/4)²
    assert s.value(1e-7, quarter, SPE, total) == pytest.approx(1e-2 + (1e-7 - 1e-2) * 0.75**2)
    assert s.value(1e-7, total * SPE, SPE, total) == pytest.approx(1e-2)


def test_parse_schedule_reads_name_kind_and_arguments():
    name, s = parse_schedule("gamma=exponential(rate=0.1, every=100)")
    assert name == "gamma" and s == Schedule(kind="exponential", rate=0.1, every=100)
    name, s = parse_schedule("tau = polynomial(end=1e-2,epochs=500,power=1)")
    assert name == "tau" and s == Schedule(kind="polynomial", end=1e-2, epochs=500, power=1)
    assert parse_schedule("lr=constant") == ("lr", Schedule())


def test_schedule_round_trips_through_plain_dicts():
    s = Schedule(kind="polynomial", end=1e-8, epochs=500, power=2)
    assert Schedule.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gamma", "cannot read schedule"),
        ("alpha=constant", "cannot schedule 'alpha'"),
        ("gamma=cosine", "unknown schedule kind"),
        ("gamma=exponential(every=100)", "needs rate > 0"),
        ("gamma=exponential(rate=0.1)", "needs every > 0"),
        ("gamma=exponential(rate=-1, every=1)", "needs rate > 0"),
        ("tau=polynomial(epochs=5)", "needs end >= 0"),
        ("tau=polynomial(end=abc)", "needs a number"),
        ("tau=polynomial(end=1, speed=2)", "unknown schedule key"),
        ("tau=polynomial(end 1)", "is not key=value"),
    ],
)
def test_bad_schedules_say_what_is_wrong(spec, message):
    with pytest.raises(UserError, match=message):
        parse_schedule(spec)
