"""`pyxl list -l` as xl 4.17 prints it (xl_info.c list_domains_details)."""

from __future__ import annotations

UUID = "0f1e2d3c-4b5a-4697-8877-665544332211"


def test_list_long_is_libxl_retrieve_domain_configuration(host):
    cfg = host.config("café", memory=96)
    cfg["c_info"]["uuid"] = UUID
    cfg["b_info"]["max_vcpus"] = 2
    cfg["b_info"]["avail_vcpus"] = [0, 1]
    cfg["vtpms"] = []           # an array with no element: gen_json leaves it out
    assert host.create("café", cfg=cfg).returncode == 0
    dom0 = host.domains()["Domain-0"]
    p = host.run("list", "-l")
    assert (p.returncode, p.stderr) == (0, "")
    # yajl_gen with yajl_gen_beautify and a 4-space indent (libxl_yajl_gen_alloc):
    # strings as they are (UTF-8 verbatim), empty maps "{", blank line, "}", a
    # newline after the complete value, and puts()'s own.
    # Domain-0: the stub xen-init-dom0 stores (init-dom-json.c gen_stub_json_config:
    # c_info.type pv, b_info of type pv), then retrieve_domain_configuration_end's
    # live name, memory (libxl__get_memory_target) and credit2 parameters
    # (sched_credit2_domain_get: sched, weight, cap; Xen's default weight 256, no cap).
    # The guest: what it was made with (libxl__domain_build_info_setdefault and
    # libxl__arch_domain_build_info_setdefault: arch_x86.msr_relaxed false), with
    # its online vCPUs (libxl__update_avail_vcpus_xenstore) and the same live fields.
    assert p.stdout == """[
    {
        "domid": 0,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "Domain-0"
            },
            "b_info": {
                "max_memkb": %d,
                "target_memkb": %d,
                "sched_params": {
                    "sched": "credit2",
                    "weight": 256,
                    "cap": 0
                },
                "type.pv": {

                },
                "arch_arm": {

                },
                "arch_x86": {

                }
            }
        }
    },
    {
        "domid": 1,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "café",
                "uuid": "%s"
            },
            "b_info": {
                "max_vcpus": 2,
                "avail_vcpus": [
                    0,
                    1
                ],
                "max_memkb": 98304,
                "target_memkb": 98304,
                "sched_params": {
                    "sched": "credit2",
                    "weight": 256,
                    "cap": 0
                },
                "kernel": "%s",
                "cmdline": "console=hvc0",
                "type.pv": {

                },
                "arch_arm": {

                },
                "arch_x86": {
                    "msr_relaxed": "False"
                }
            }
        }
    }
]

""" % (dom0["max_memkb"], dom0["mem"] * 1024, UUID, host.kernel)
