"""The pool under random runtime changes, against a plain model of who may be picked.

Hypothesis drives adds, removes, drains, enables, check results, connect failures, the
clock and connection starts/ends in any order; after every step a pick must agree with
the model: None exactly when the model has no eligible backend, else an eligible one.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lb.algorithms import ALGORITHMS, make_algorithm
from lb.backend import Admin, Backend, Pool
from lb.health import HealthSettings, HealthState

PORTS = st.integers(1, 6)


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool: Pool | None = None
        self.now = 0.0
        self.settings = HealthSettings(rise=2, fall=2, eject_after=2, eject_cooldown=5.0)

    @precondition(lambda self: self.pool is None)
    @rule(name=st.sampled_from(sorted(ALGORITHMS)))
    def start(self, name):
        self.pool = Pool(make_algorithm(name))

    @precondition(lambda self: self.pool is not None)
    @rule(port=PORTS, weight=st.integers(1, 4), maxconn=st.integers(0, 2))
    def add(self, port, weight, maxconn):
        backend = Backend("127.0.0.1", port, weight, maxconn, health=HealthState(self.settings))
        if backend.name not in self.pool.backends:
            self.pool.add(backend)

    def _some(self, port):
        return self.pool.backends.get(f"127.0.0.1:{port}") if self.pool else None

    @rule(port=PORTS)
    def remove(self, port):
        if self._some(port):
            self.pool.remove(f"127.0.0.1:{port}")

    @rule(port=PORTS, admin=st.sampled_from(list(Admin)))
    def set_admin(self, port, admin):
        if self._some(port):
            self.pool.set_admin(f"127.0.0.1:{port}", admin, self.now)

    @rule(port=PORTS, ok=st.booleans())
    def check(self, port, ok):
        if b := self._some(port):
            b.health.record_check(ok, self.now)

    @rule(port=PORTS)
    def connect_fails(self, port):
        if b := self._some(port):
            b.health.record_connect_failure(self.now)

    @rule(dt=st.floats(0, 10))
    def tick(self, dt):
        self.now += dt

    @rule(key=st.sampled_from(["192.0.2.1", "192.0.2.2", "198.51.100.9"]))
    def pick_and_connect(self, key):
        if self.pool is None:
            return
        chosen = self.pool.choose(key, self.now)
        if chosen is not None:
            chosen.active += 1

    @rule(port=PORTS)
    def disconnect(self, port):
        if (b := self._some(port)) and b.active > 0:
            b.active -= 1

    def model_eligible(self, b: Backend) -> bool:
        healthy = b.health.state.value in ("UP", "FAILING")
        ejected = self.now < b.health.ejected_until
        full = b.maxconn > 0 and b.active >= b.maxconn
        return b.admin is Admin.ENABLED and healthy and not ejected and not full

    @invariant()
    def picks_agree_with_the_model(self):
        if self.pool is None:
            return
        eligible = [b for b in self.pool.backends.values() if self.model_eligible(b)]
        chosen = self.pool.choose("203.0.113.5", self.now)
        if eligible:
            assert chosen in eligible
            assert 0 < chosen.effective_weight <= chosen.weight
        else:
            assert chosen is None


PoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
test_pool_against_a_model = PoolMachine.TestCase
