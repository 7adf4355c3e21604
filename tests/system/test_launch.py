"""The launcher's scheduler port: held from the moment it is chosen until the cluster
stops, so that nothing else can take it before the scheduler binds it."""
import errno
import socket

import pytest

from densenet.system.launch import Cluster, reserve_port


def test_a_reserved_port_is_refused_to_others_and_free_for_the_scheduler():
    port, holder = reserve_port()
    try:
        with socket.socket() as other:  # any other bind (or connection) is refused it
            with pytest.raises(OSError) as error:
                other.bind(('127.0.0.1', port))
            assert error.value.errno == errno.EADDRINUSE
        with socket.socket() as scheduler:  # as ZeroMQ binds: SO_REUSEADDR, then listen
            scheduler.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            scheduler.bind(('127.0.0.1', port))
            scheduler.listen()
    finally:
        holder.close()


def test_the_cluster_holds_its_port_until_it_stops():
    cluster = Cluster(['true'], 1, 1)
    port = int(cluster.env['DMLC_PS_ROOT_PORT'])
    with socket.socket() as other:
        with pytest.raises(OSError):
            other.bind(('127.0.0.1', port))
    cluster.stop()  # nothing started: only the port to give back
    with socket.socket() as other:
        other.bind(('127.0.0.1', port))
    given = Cluster(['true'], 1, 1, port=port)  # a port the caller chose is not held
    assert given.env['DMLC_PS_ROOT_PORT'] == str(port) and given._port_holder is None
