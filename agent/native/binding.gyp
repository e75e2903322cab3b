{
  "targets": [
    {
      "target_name": "ntmdp",
      "sources": ["module.c", "common.c", "poll.c", "nfqueue.c", "gso.c", "inject.c", "tun.c", "udp.c", "rxopen.c", "aead.c", "keccak.c", "hmac.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11", "-fvisibility=hidden"],
      "libraries": ["-lnetfilter_queue", "-lnfnetlink"]
    }
  ]
}
