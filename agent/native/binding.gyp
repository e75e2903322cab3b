{
  "targets": [
    {
      "target_name": "ntmdp",
      "sources": ["ntmdp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "libraries": ["-lnetfilter_queue", "-lnfnetlink"]
    }
  ]
}
