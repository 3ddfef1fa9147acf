"""Clients that hang up while their handler waits on the database, on a throwaway MariaDB of this
file's own: the server stays up (and clean under ASan), later requests work, an open transaction
is rolled back and its connection goes back to the pool clean."""

import socket
import struct
import time

import dbharness
import harness
from dbharness import poll

TABLE = "t_disconnect_tx"
HANGUPS = 20
POOL = 8
TX_SLEEP = 1.5


def setUpModule():
    db = dbharness.ThrowawayDB().start()
    dbharness.ThrowawayDbTestCase.throwaway = db
    db.sql("CREATE TABLE %s (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB" % TABLE)


def tearDownModule():
    dbharness.ThrowawayDbTestCase.throwaway.destroy()


class ClientDisconnectTest(dbharness.ThrowawayDbTestCase):
    db = {"pool_size": POOL}

    def hang_up(self, method, path, linger=0.0, reset=False):
        """Send one request and close the socket (after `linger` seconds) without reading: a
        FIN, or with reset=True an RST (SO_LINGER 0). Returns the seconds from send to close."""
        c = self.connect()
        try:
            c.send(harness.build_request(method, path))
            sent = time.monotonic()
            if linger:
                time.sleep(linger)
            if reset:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            c.close()
        return time.monotonic() - sent

    def assertLeftTransactionsRolledBack(self, base, how, reset=False):
        """Six clients start /d/tx-sleep (insert id, wait TX_SLEEP, insert id+1, commit) and hang
        up 50 ms in: none of their rows may be stored. A hang-up that a busy test machine delayed
        past half the wait does not count (its handler may have finished first)."""
        prompt = []
        for i in range(6):
            rid = base + 10 * i
            took = self.hang_up("POST", "/d/tx-sleep?t=%s&id=%d&s=%g&how=%s"
                                % (TABLE, rid, TX_SLEEP, how), linger=0.05, reset=reset)
            if took < TX_SLEEP / 2:
                prompt.append(rid)
        self.assertGreaterEqual(len(prompt), 3, "the test machine is too slow to hang up in time")
        time.sleep(TX_SLEEP + 0.3)  # a handler that carried on has committed by now
        self.wait_pool_idle(timeout=20)
        _, seen = poll(self.open_transactions, lambda n: n == 0, 3)
        self.assertEqual(seen[-1], 0, "a transaction is still open on the server")
        rows = self.throwaway.sql("SELECT id FROM %s WHERE id BETWEEN %d AND %d"
                                  % (TABLE, base, base + 999))
        committed = [int(r[0]) for r in rows if int(r[0]) // 10 * 10 in prompt]
        self.assertEqual(committed, [], "transactions whose client left were committed")
        self.assertStillServing()
        self.assertFullPoolUsable(POOL)
        self.assertEqual(self.get("/tx/in-transaction").json()["in_tx"], 0)

    def open_transactions(self):
        return int(self.throwaway.scalar("SELECT COUNT(*) FROM information_schema.innodb_trx",
                                         root=True, database=False))

    def assertStillServing(self):
        self.assertTrue(self.server.running(), "squall died\n%s" % self.server.describe())
        self.assertResponse(self.get("/ping"), 200, "pong")
        self.assertJson(self.get("/c/quick?v=1"), 200, {"v": 2})

    def test_clients_leaving_during_a_query_do_not_hurt_the_server(self):
        for i in range(HANGUPS):   # half at once, half once the query has started
            self.hang_up("GET", "/c/sleep?s=1&tag=gone%d" % i, linger=0.05 * (i % 2))
        self.assertResponse(self.get("/ping"), 200, "pong")
        self.wait_pool_idle(timeout=20)
        self.assertStillServing()
        self.assertFullPoolUsable(POOL)

    # A client closing its socket (FIN) while the handler waits: the request is abandoned.
    def test_transaction_of_a_client_that_closed_during_a_query_is_rolled_back(self):
        self.assertLeftTransactionsRolledBack(1000, "db")

    def test_transaction_of_a_client_that_closed_during_a_sleep_is_rolled_back(self):
        self.assertLeftTransactionsRolledBack(2000, "timer")

    # The same with a connection reset (RST).
    def test_transaction_of_a_client_that_reset_during_a_query_is_rolled_back(self):
        self.assertLeftTransactionsRolledBack(4000, "db", reset=True)

    def test_transaction_of_a_client_that_reset_during_a_sleep_is_rolled_back(self):
        self.assertLeftTransactionsRolledBack(5000, "timer", reset=True)

    def test_clients_resetting_during_a_query_do_not_hurt_the_server(self):
        for i in range(HANGUPS):
            self.hang_up("GET", "/c/sleep?s=1&tag=reset%d" % i, linger=0.02, reset=True)
        self.wait_pool_idle(timeout=20)
        self.assertStillServing()
        self.assertFullPoolUsable(POOL)

    def test_client_that_stays_gets_its_transaction_committed(self):
        # The control case: the same route commits when nobody hangs up.
        r = self.post("/d/tx-sleep?t=%s&id=3000&s=0.2&how=db" % TABLE)
        self.assertJson(r, 200, {"ok": True})
        r = self.post("/d/tx-sleep?t=%s&id=3010&s=0.2&how=timer" % TABLE)
        self.assertJson(r, 200, {"ok": True})
        rows = self.throwaway.sql("SELECT id FROM %s WHERE id BETWEEN 3000 AND 3999 ORDER BY id"
                                  % TABLE)
        self.assertEqual(rows, [["3000"], ["3001"], ["3010"], ["3011"]])

    def test_pipelined_requests_then_hang_up(self):
        c = self.connect()
        c.send(harness.build_request("GET", "/c/sleep?s=0.3&tag=p1") +
               harness.build_request("GET", "/c/sleep?s=0.3&tag=p2") +
               harness.build_request("GET", "/c/quick?v=1"))
        c.close()
        self.wait_pool_idle(timeout=10)
        self.assertStillServing()


if __name__ == "__main__":
    harness.main()
