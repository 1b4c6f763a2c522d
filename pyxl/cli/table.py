"""The one command table.

Every xl 4.17 subcommand is one row here, in the order of Xen 4.17's
tools/xl/xl_cmdtable.c, with xl's own description, usage and option text
(byte for byte: `pyxl help CMD` prints them as xl's help() does), and the
arguments xl's main_* function gives def_getopt (tools/xl/xl_utils.c): the
getopt_long option string (def_getopt adds "h"), the long options, and how
many positional arguments it requires.  pyxl's own commands (the simulated
host's daemon, tpm-serve, the xenstore tools) follow.  `help` is no row, as
in xl: main() answers it when no command matches.  Dispatch, `pyxl help`,
`pyxl help CMD` and man/pyxl.1 are all generated from this table.

Handlers are named as "module:function" strings and imported only when their
command runs: listing or resolving commands never imports typer or any layer.
"""

from __future__ import annotations

from collections import namedtuple

# name; handler: "module:function"; can_dryrun: accepts the global -N;
# modifies: accepts the global -f (xl's "modifies" flag); desc, usage,
# options: xl's cmd_desc, cmd_usage and cmd_option (None where xl's row has
# none); getopt, longopts, nreq: def_getopt's optstring (without the "h" it
# adds), long options as (name, has_arg, val) -- None for def_getopt's
# default (--help only) -- and required positional arguments; getopt None:
# the command reads its arguments itself without getopt (main_getenforce).
# selfparse: the handler runs def_getopt itself, after looking at its
# arguments first as xl's main_create does (pyxl's daemon: to run it with
# GNU ordering, `daemon stop --force`).  xl: False for pyxl's own commands,
# which are found by their full name only.
# A handler is called as handler(opts, args): opts the (option, optarg)
# pairs getopt returned, args the positional arguments; with getopt None or
# selfparse, opts is None and args are all the command's arguments (the
# xenstore tools read them with xenstore_client.c's own getopt_long).
# typer: the handler's typer signature declares the command's options
# instead (tpm-serve: its many long options, typed values, help text);
# typer parses the command line and the handler is called with keyword
# arguments.  typer (and pydantic under it, ~0.2 s of start-up) is
# imported only when such a command runs, or for its help.
# A namedtuple rather than a dataclass: every pyxl run imports this table,
# and dataclasses (with inspect) cost ~10 ms of start-up.
Command = namedtuple("Command", "name handler can_dryrun modifies desc usage options "
                     "getopt longopts nreq xl selfparse typer", defaults=(True, False, False))


COMMANDS: tuple[Command, ...] = (
    # main_create
    Command('create', 'pyxl.cli.create:create', True, True,
            'Create a domain from config file <filename>',
            '<ConfigFile> [options] [vars]',
            ('-c                      Connect to the console after the domain is created.\n'
             '-d                      Enable debug messages.\n'
             '-e                      Do not wait in the background for the death of the domain.\n'
             '-F                      Run in foreground until death of the domain.\n'
             '-f FILE, --defconfig=FILE\n'
             '                     Use the given configuration file.\n'
             '-h                      Print this help.\n'
             '-n, --dryrun            Dry run - prints the resulting configuration\n'
             '                         (deprecated in favour of global -N option).\n'
             '-p                      Leave the domain paused after it is created.\n'
             '-q, --quiet             Quiet.\n'
             '-V, --vncviewer         Connect to the VNC display after the domain is created.\n'
             '-A, --vncviewer-autopass\n'
             '                        Pass VNC password to viewer via stdin.\n'
             '--ignore-global-affinity-masks Ignore global masks in xl.conf.'),
            'AFVcdef:inpq', (('defconfig', 1, 'f'), ('dryrun', 0, 'n'), ('ignore-global-affinity-masks', 0, 'i'), ('quiet', 0, 'q'), ('vncviewer', 0, 'V'), ('vncviewer-autopass', 0, 'A')), 0, selfparse=True),
    # main_config_update
    Command('config-update', 'pyxl.cli.configupdate:config_update', True, True,
            ("Update a running domain's saved configuration, used when rebuilding the domain after reboot.\n"
             'WARNING: xl now has better capability to manage domain configuration, avoid using this command when possible'),
            '<Domain> <ConfigFile> [options] [vars]',
            ('-h                      Print this help.\n'
             '-f FILE, --defconfig=FILE\n'
             '                     Use the given configuration file.\n'
             '-d                      Enable debug messages.\n'),
            'dqf:', (('defconfig', 1, 'f'),), 0, selfparse=True),
    # main_list
    Command('list', 'pyxl.cli.info:list_', False, False,
            'List information about all/some domains',
            '[options] [Domain]\n',
            ('-l, --long              Output all VM details\n'
             '-v, --verbose           Prints out UUIDs and security context\n'
             '-Z, --context           Prints out security context\n'
             '-c, --cpupool           Prints the cpupool the domain is in\n'
             '-n, --numa              Prints out NUMA node affinity'),
            'lvhZcn', (('long', 0, 'l'), ('verbose', 0, 'v'), ('context', 0, 'Z'), ('cpupool', 0, 'c'), ('numa', 0, 'n')), 0),
    # main_destroy
    Command('destroy', 'pyxl.cli.vmcontrol:destroy', False, True,
            'Terminate a domain immediately',
            '[options] <Domain>\n',
            ('-f                      Permit destroying domain 0, which will only succeed\n'
             '                        when run from disaggregated toolstack domain with a\n'
             '                        hardware domain distinct from domain 0.'),
            'f', None, 1),
    # main_shutdown
    Command('shutdown', 'pyxl.cli.vmcontrol:shutdown', False, True,
            'Issue a shutdown signal to a domain',
            '[options] <-a|Domain>',
            ('-a, --all               Shutdown all guest domains.\n'
             '-h                      Print this help.\n'
             '-F                      Fallback to ACPI power event for HVM guests with\n'
             '                        no PV drivers.\n'
             '-w, --wait              Wait for guest(s) to shutdown.\n'),
            'awF', (('all', 0, 'a'), ('wait', 0, 'w')), 0),
    # main_reboot
    Command('reboot', 'pyxl.cli.vmcontrol:reboot', False, True,
            'Issue a reboot signal to a domain',
            '[options] <-a|Domain>',
            ('-a, --all               Shutdown all guest domains.\n'
             '-h                      Print this help.\n'
             '-F                      Fallback to ACPI reset event for HVM guests with\n'
             '                        no PV drivers.\n'
             '-w, --wait              Wait for guest(s) to reboot.\n'),
            'awF', (('all', 0, 'a'), ('wait', 0, 'w')), 0),
    # main_pciattach
    Command('pci-attach', 'pyxl.cli.impossible:pci_attach', False, True,
            'Insert a new pass-through pci device',
            '<Domain> <PCI_SPEC_STRING>',
            None,
            '', None, 2),
    # main_pcidetach
    Command('pci-detach', 'pyxl.cli.impossible:pci_detach', False, True,
            "Remove a domain's pass-through pci device",
            '<Domain> <PCI_SPEC_STRING>',
            None,
            'f', None, 2),
    # main_pcilist
    Command('pci-list', 'pyxl.cli.impossible:pci_list', False, False,
            'List pass-through pci devices for a domain',
            '<Domain>',
            None,
            '', None, 1),
    # main_pciassignable_add
    Command('pci-assignable-add', 'pyxl.cli.impossible:pci_assignable_add', False, True,
            'Make a device assignable for pci-passthru',
            '[options] <BDF>',
            ('-n NAME, --name=NAME    Name the assignable device.\n'
             '-h                      Print this help.\n'),
            'n:', (('name', 1, 'n'),), 1),
    # main_pciassignable_remove
    Command('pci-assignable-remove', 'pyxl.cli.impossible:pci_assignable_remove', False, True,
            'Remove a device from being assignable',
            '[options] <BDF>|NAME',
            ('-h                      Print this help.\n'
             '-r                      Attempt to re-assign the device to the\n'
             '                        original driver.'),
            'r', None, 1),
    # main_pciassignable_list
    Command('pci-assignable-list', 'pyxl.cli.absent:pci_assignable_list', False, False,
            'List all the assignable pci devices',
            '[options]',
            ('-h                      Print this help.\n'
             '-n, --show-names        Display assignable device names where\n'
             '                        supplied.\n'),
            'n', (('show-names', 0, 'n'),), 0),
    # main_pause
    Command('pause', 'pyxl.cli.vmcontrol:pause', False, True,
            'Pause execution of a domain',
            '<Domain>',
            None,
            '', None, 1),
    # main_unpause
    Command('unpause', 'pyxl.cli.vmcontrol:unpause', False, True,
            'Unpause a paused domain',
            '<Domain>',
            None,
            '', None, 1),
    # main_console
    Command('console', 'pyxl.cli.console:console', False, False,
            "Attach to domain's console",
            ('[options] <Domain>\n'
             '-t <type>       console type, pv , serial or vuart\n'
             '-n <number>     console number'),
            None,
            'n:t:', None, 1, selfparse=True),
    # main_vncviewer
    Command('vncviewer', 'pyxl.cli.impossible:vncviewer', False, False,
            "Attach to domain's VNC server.",
            ('[options] <Domain>\n'
             '--autopass               Pass VNC password to viewer via stdin and\n'
             '                         -autopass\n'
             '--vncviewer-autopass     (consistency alias for --autopass)'),
            None,
            'a', (('autopass', 0, 'a'), ('vncviewer-autopass', 0, 'a')), 1),
    # main_save
    Command('save', 'pyxl.cli.saverestore:save', False, True,
            'Save a domain state to restore later',
            '[options] <Domain> <CheckpointFile> [<ConfigFile>]',
            ('-h  Print this help.\n'
             '-c  Leave domain running after creating the snapshot.\n'
             '-p  Leave domain paused after creating the snapshot.\n'
             '-D  Store the domain id in the configuration.'),
            'cpD', None, 2),
    # main_migrate
    Command('migrate', 'pyxl.cli.migrate:migrate', False, True,
            'Migrate a domain to another host',
            '[options] <Domain> <host>',
            ('-h              Print this help.\n'
             '-C <config>     Send <config> instead of config file from creation.\n'
             '-s <sshcommand> Use <sshcommand> instead of ssh.  String will be passed\n'
             '                to sh. If empty, run <host> instead of ssh <host> xl\n'
             '                migrate-receive [-d -e]\n'
             '-e              Do not wait in the background (on <host>) for the death\n'
             '                of the domain.\n'
             '--debug         Print huge (!) amount of debug during the migration process.\n'
             '-p              Do not unpause domain after migrating it.\n'
             '-D              Preserve the domain id'),
            'FC:s:epD', (('debug', 0, 256), ('live', 0, 512)), 2),
    # main_restore
    Command('restore', 'pyxl.cli.saverestore:restore', False, True,
            'Restore a domain from a saved state',
            '[options] [<ConfigFile>] <CheckpointFile>',
            ('-h                       Print this help.\n'
             '-p                       Do not unpause domain after restoring it.\n'
             '-e                       Do not wait in the background for the death of the domain.\n'
             '-d                       Enable debug messages.\n'
             '-V, --vncviewer          Connect to the VNC display after the domain is created.\n'
             '-A, --vncviewer-autopass Pass VNC password to viewer via stdin.'),
            'FcpdeVA', (('vncviewer', 0, 'V'), ('vncviewer-autopass', 0, 'A')), 1),
    # main_migrate_receive
    Command('migrate-receive', 'pyxl.cli.saverestore:migrate_receive', False, True,
            'Restore a domain from a saved state',
            '- for internal use only',
            None,
            'Fedrp', (('colo', 0, 256), ('coloft-script', 1, 512), ('userspace-colo-proxy', 0, 768)), 0),
    # main_dump_core
    Command('dump-core', 'pyxl.cli.resources:dump_core', False, True,
            'Core dump a domain',
            '<Domain> <filename>',
            None,
            '', None, 2),
    # main_cd_insert
    Command('cd-insert', 'pyxl.cli.impossible:cd_insert', True, True,
            "Insert a cdrom into a guest's cd drive",
            '<Domain> <VirtualDevice> <path>',
            None,
            '', None, 3),
    # main_cd_eject
    Command('cd-eject', 'pyxl.cli.impossible:cd_eject', True, True,
            "Eject a cdrom from a guest's cd drive",
            '<Domain> <VirtualDevice>',
            None,
            '', None, 2),
    # main_memmax
    Command('mem-max', 'pyxl.cli.resources:mem_max', False, True,
            'Set the maximum amount reservation for a domain',
            "<Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>",
            None,
            '', None, 2),
    # main_memset
    Command('mem-set', 'pyxl.cli.resources:mem_set', False, True,
            'Set the current memory usage for a domain',
            "<Domain> <MemMB['b'[bytes]|'k'[KB]|'m'[MB]|'g'[GB]|'t'[TB]]>",
            None,
            '', None, 2),
    # main_button_press
    Command('button-press', 'pyxl.cli.impossible:button_press', False, True,
            'Indicate an ACPI button press to the domain',
            '<Domain> <Button>',
            "<Button> may be 'power' or 'sleep'.",
            '', None, 2, selfparse=True),
    # main_vcpulist
    Command('vcpu-list', 'pyxl.cli.resources:vcpu_list', False, False,
            'List the VCPUs for all/some domains',
            '[Domain, ...]',
            None,
            '', None, 0),
    # main_vcpupin
    Command('vcpu-pin', 'pyxl.cli.resources:vcpu_pin', True, True,
            'Set which CPUs a VCPU can use',
            '[option] <Domain> <VCPU|all> <Hard affinity|-|all> <Soft affinity|-|all>',
            ('-f, --force        undo an override pinning done by the kernel\n'
             '--ignore-global-affinity-masks Ignore global masks in xl.conf'),
            'fi', (('force', 0, 'f'), ('ignore-global-affinity-masks', 0, 'i')), 3),
    # main_vcpuset
    Command('vcpu-set', 'pyxl.cli.resources:vcpu_set', False, True,
            'Set the number of active VCPUs allowed for the domain',
            '[option] <Domain> <vCPUs>',
            "-i, --ignore-host  Don't limit the vCPU based on the host CPU count",
            'i', (('ignore-host', 0, 'i'),), 2),
    # main_vm_list
    Command('vm-list', 'pyxl.cli.info:vm_list', False, False,
            'List guest domains, excluding dom0, stubdoms, etc.',
            '',
            None,
            '', None, 0),
    # main_info
    Command('info', 'pyxl.cli.info:info', False, False,
            'Get information about Xen host',
            '-n, --numa         List host NUMA topology information',
            None,
            'n', (('numa', 0, 'n'),), 0),
    # main_sharing
    Command('sharing', 'pyxl.cli.info:sharing', False, False,
            'Get information about page sharing',
            '[Domain]',
            None,
            '', None, 0),
    # main_sched_credit
    Command('sched-credit', 'pyxl.cli.resources:sched_credit', False, True,
            'Get/set credit scheduler parameters',
            '[-d <Domain> [-w[=WEIGHT]|-c[=CAP]]] [-s [-t TSLICE] [-r RATELIMIT]] [-p CPUPOOL]',
            ('-d DOMAIN, --domain=DOMAIN        Domain to modify\n'
             '-w WEIGHT, --weight=WEIGHT        Weight (int)\n'
             '-c CAP, --cap=CAP                 Cap (int)\n'
             '-s         --schedparam           Query / modify scheduler parameters\n'
             '-t TSLICE, --tslice_ms=TSLICE     Set the timeslice, in milliseconds\n'
             '-r RLIMIT, --ratelimit_us=RLIMIT  Set the scheduling rate limit, in microseconds\n'
             '-m DLY, --migration_delay_us=DLY  Set the migration delay, in microseconds\n'
             '-p CPUPOOL, --cpupool=CPUPOOL     Restrict output to CPUPOOL'),
            'd:w:c:p:t:r:m:s', (('domain', 1, 'd'), ('weight', 1, 'w'), ('cap', 1, 'c'), ('schedparam', 0, 's'), ('tslice_ms', 1, 't'), ('ratelimit_us', 1, 'r'), ('migration_delay_us', 1, 'm'), ('cpupool', 1, 'p')), 0),
    # main_sched_credit2
    Command('sched-credit2', 'pyxl.cli.resources:sched_credit2', False, True,
            'Get/set credit2 scheduler parameters',
            '[-d <Domain> [-w[=WEIGHT]]] [-p CPUPOOL]',
            ('-d DOMAIN, --domain=DOMAIN     Domain to modify\n'
             '-w WEIGHT, --weight=WEIGHT     Weight (int)\n'
             '-c CAP,    --cap=CAP           Cap (int)\n'
             '-s         --schedparam        Query / modify scheduler parameters\n'
             '-r RLIMIT, --ratelimit_us=RLIMIT Set the scheduling rate limit, in microseconds\n'
             '-p CPUPOOL, --cpupool=CPUPOOL  Restrict output to CPUPOOL'),
            'd:w:c:p:r:s', (('domain', 1, 'd'), ('weight', 1, 'w'), ('cap', 1, 'c'), ('schedparam', 0, 's'), ('ratelimit_us', 1, 'r'), ('cpupool', 1, 'p')), 0),
    # main_sched_rtds
    Command('sched-rtds', 'pyxl.cli.resources:sched_rtds', False, True,
            'Get/set rtds scheduler parameters',
            '[-d <Domain> [-v[=VCPUID/all]] [-p[=PERIOD]] [-b[=BUDGET]] [-e[=Extratime]]]',
            ('-d DOMAIN, --domain=DOMAIN     Domain to modify\n'
             '-v VCPUID/all, --vcpuid=VCPUID/all    VCPU to modify or output;\n'
             "               Using '-v all' to modify/output all vcpus\n"
             '-p PERIOD, --period=PERIOD     Period (us)\n'
             '-b BUDGET, --budget=BUDGET     Budget (us)\n'
             '-e Extratime, --extratime=Extratime Extratime (1=yes, 0=no)\n'),
            'd:p:b:e:v:c', (('domain', 1, 'd'), ('period', 1, 'p'), ('budget', 1, 'b'), ('extratime', 1, 'e'), ('vcpuid', 1, 'v'), ('cpupool', 1, 'c')), 0),
    # main_domid
    Command('domid', 'pyxl.cli.info:domid', False, False,
            'Convert a domain name to domain id',
            '<DomainName>',
            None,
            '', None, 1),
    # main_domname
    Command('domname', 'pyxl.cli.info:domname', False, False,
            'Convert a domain id to domain name',
            '<DomainId>',
            None,
            '', None, 1),
    # main_rename
    Command('rename', 'pyxl.cli.vmcontrol:rename', False, True,
            'Rename a domain',
            '<Domain> <NewDomainName>',
            None,
            '', None, 2),
    # main_trigger
    Command('trigger', 'pyxl.cli.impossible:trigger', False, True,
            'Send a trigger to a domain',
            '<Domain> <nmi|reset|init|power|sleep|s3resume> [<VCPU>]',
            None,
            '', None, 2),
    # main_sysrq
    Command('sysrq', 'pyxl.cli.resources:sysrq', False, True,
            'Send a sysrq to a domain',
            '<Domain> <letter>',
            None,
            '', None, 2),
    # main_debug_keys
    Command('debug-keys', 'pyxl.cli.resources:debug_keys', False, True,
            'Send debug keys to Xen',
            '<Keys>',
            None,
            '', None, 1),
    # main_set_parameters
    Command('set-parameters', 'pyxl.cli.absent:set_parameters', False, True,
            'Set hypervisor parameters',
            '<Params>',
            None,
            '', None, 1),
    # main_dmesg
    Command('dmesg', 'pyxl.cli.info:dmesg', False, False,
            'Read and/or clear dmesg buffer',
            '[-c]',
            '  -c                        Clear dmesg buffer as well as printing it',
            'c', (('clear', 0, 'c'),), 0),
    # main_top
    Command('top', 'pyxl.cli.info:top', False, False,
            'Monitor a host and the domains in real time',
            '',
            None,
            '', None, 0),
    # main_networkattach
    Command('network-attach', 'pyxl.cli.devices:network_attach', True, True,
            'Create a new virtual network device',
            '<Domain> [type=<type>] [mac=<mac>] [bridge=<bridge>] [ip=<ip>] [script=<script>] [backend=<BackDomain>] [vifname=<name>] [rate=<rate>] [model=<model>] [accel=<accel>] [mtu=<mtu>]',
            None,
            '', None, 1),
    # main_networklist
    Command('network-list', 'pyxl.cli.devices:network_list', False, False,
            'List virtual network interfaces for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_networkdetach
    Command('network-detach', 'pyxl.cli.devices:network_detach', False, True,
            "Destroy a domain's virtual network device",
            '<Domain> <DevId|mac>',
            None,
            '', None, 2),
    # main_channellist
    Command('channel-list', 'pyxl.cli.devices:channel_list', False, False,
            'List virtual channel devices for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_blockattach
    Command('block-attach', 'pyxl.cli.devices:block_attach', True, True,
            'Create a new virtual block device',
            '<Domain> <disk-spec-component(s)>...',
            None,
            '', None, 2),
    # main_blocklist
    Command('block-list', 'pyxl.cli.devices:block_list', False, False,
            'List virtual block devices for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_blockdetach
    Command('block-detach', 'pyxl.cli.devices:block_detach', False, True,
            "Destroy a domain's virtual block device",
            '[option] <Domain> <DevId>',
            '-f, --force        do not wait for the domain to release the device',
            'f', (('force', 0, 'f'),), 2),
    # main_vtpmattach
    Command('vtpm-attach', 'pyxl.cli.vtpm:vtpm_attach', True, True,
            'Create a new virtual TPM device',
            '<Domain> [uuid=<uuid>] [backend=<BackDomain>]',
            None,
            '', None, 1),
    # main_vtpmlist
    Command('vtpm-list', 'pyxl.cli.vtpm:vtpm_list', False, False,
            'List virtual TPM devices for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_vtpmdetach
    Command('vtpm-detach', 'pyxl.cli.vtpm:vtpm_detach', False, True,
            "Destroy a domain's virtual TPM device",
            '<Domain> <DevId|uuid>',
            None,
            '', None, 2),
    # main_vkbattach
    Command('vkb-attach', 'pyxl.cli.devices:vkb_attach', True, True,
            'Create a new virtual keyboard device',
            '<Domain> <vkb-spec-component(s)>...',
            None,
            '', None, 2),
    # main_vkblist
    Command('vkb-list', 'pyxl.cli.devices:vkb_list', False, False,
            'List virtual keyboard devices for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_vkbdetach
    Command('vkb-detach', 'pyxl.cli.devices:vkb_detach', False, True,
            "Destroy a domain's virtual keyboard device",
            '<Domain> <DevId>',
            None,
            '', None, 2),
    # main_vdisplattach
    Command('vdispl-attach', 'pyxl.cli.devices:vdispl_attach', True, True,
            'Create a new virtual display device',
            "<Domain> [backend=<BackDomain>] [be-alloc=<BackAlloc>] [connectors='<Connectors>']",
            ('    BackAlloc  - set to 1 to if backend allocates display buffers\n'
             "    Connectors - list of connector's description in ID:WxH format,\n"
             '                 where: ID - unique connector ID, W - connector width,\n'
             "                 H - connector height: connectors='id0:800x600;id1:1024x768'\n"),
            '', None, 1),
    # main_vdispllist
    Command('vdispl-list', 'pyxl.cli.devices:vdispl_list', False, False,
            'List virtual display devices for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_vdispldetach
    Command('vdispl-detach', 'pyxl.cli.devices:vdispl_detach', False, True,
            "Destroy a domain's virtual display device",
            '<Domain> <DevId>',
            None,
            '', None, 2),
    # main_vsndattach
    Command('vsnd-attach', 'pyxl.cli.vsnd:vsnd_attach', True, True,
            'Create a new virtual sound device',
            '<Domain> <vsnd-spec-component(s)>...',
            None,
            '', None, 2),
    # main_vsndlist
    Command('vsnd-list', 'pyxl.cli.vsnd:vsnd_list', False, False,
            'List virtual display devices for a domain',
            '<Domain(s)>',
            None,
            '', None, 1),
    # main_vsnddetach
    Command('vsnd-detach', 'pyxl.cli.vsnd:vsnd_detach', False, True,
            "Destroy a domain's virtual sound device",
            '<Domain> <DevId>',
            None,
            '', None, 2),
    # main_uptime
    Command('uptime', 'pyxl.cli.info:uptime', False, False,
            'Print uptime for all/some domains',
            '[-s] [Domain]',
            None,
            's', None, 0),
    # main_claims
    Command('claims', 'pyxl.cli.info:claims', False, False,
            'List outstanding claim information about all domains',
            '',
            '',
            '', None, 0),
    # main_cpupoolcreate
    Command('cpupool-create', 'pyxl.cli.cpupool:cpupool_create', True, True,
            'Create a new CPU pool',
            '[options] [<ConfigFile>] [Variable=value ...]',
            ('-h, --help                   Print this help.\n'
             '-f FILE, --defconfig=FILE    Use the given configuration file.\n'
             '-n, --dryrun                 Dry run - prints the resulting configuration.\n'
             '                              (deprecated in favour of global -N option).\n'
             '\n'
             'See the xlcpupool.cfg(5) manpage for more information.'),
            'nf:', (('defconfig', 1, 'f'), ('dryrun', 0, 'n')), 0),
    # main_cpupoollist
    Command('cpupool-list', 'pyxl.cli.cpupool:cpupool_list', False, False,
            'List CPU pools on host',
            '[-c|--cpus] [<CPU Pool>]',
            '-c, --cpus                     Output list of CPUs used by a pool',
            'c', (('cpus', 0, 'c'),), 0),
    # main_cpupooldestroy
    Command('cpupool-destroy', 'pyxl.cli.cpupool:cpupool_destroy', False, True,
            'Deactivates a CPU pool',
            '<CPU Pool>',
            None,
            '', None, 1),
    # main_cpupoolrename
    Command('cpupool-rename', 'pyxl.cli.cpupool:cpupool_rename', False, True,
            'Renames a CPU pool',
            '<CPU Pool> <new name>',
            None,
            '', None, 2),
    # main_cpupoolcpuadd
    Command('cpupool-cpu-add', 'pyxl.cli.cpupool:cpupool_cpu_add', False, True,
            'Adds a CPU to a CPU pool',
            '<CPU Pool> <CPU nr>|node:<node nr>',
            None,
            '', None, 2),
    # main_cpupoolcpuremove
    Command('cpupool-cpu-remove', 'pyxl.cli.cpupool:cpupool_cpu_remove', False, True,
            'Removes a CPU from a CPU pool',
            '<CPU Pool> <CPU nr>|node:<node nr>',
            None,
            '', None, 2),
    # main_cpupoolmigrate
    Command('cpupool-migrate', 'pyxl.cli.cpupool:cpupool_migrate', False, True,
            'Moves a domain into a CPU pool',
            '<Domain> <CPU Pool>',
            None,
            '', None, 2),
    # main_cpupoolnumasplit
    Command('cpupool-numa-split', 'pyxl.cli.cpupool:cpupool_numa_split', False, True,
            'Splits up the machine into one CPU pool per NUMA node',
            '',
            None,
            '', None, 0),
    # main_getenforce
    Command('getenforce', 'pyxl.cli.absent:getenforce', False, False,
            'Returns the current enforcing mode of the Flask Xen security module',
            '',
            None,
            None, None, 0),
    # main_setenforce
    Command('setenforce', 'pyxl.cli.absent:setenforce', False, True,
            'Sets the current enforcing mode of the Flask Xen security module',
            '<1|0|Enforcing|Permissive>',
            None,
            None, None, 0),
    # main_loadpolicy
    Command('loadpolicy', 'pyxl.cli.absent:loadpolicy', False, True,
            'Loads a new policy into the Flask Xen security module',
            '<policy file>',
            None,
            None, None, 0),
    # main_remus
    Command('remus', 'pyxl.cli.migrate:remus', False, True,
            'Enable Remus HA for domain',
            '[options] <Domain> [<host>]',
            ('-i MS                   Checkpoint domain memory every MS milliseconds (def. 200ms).\n'
             '-u                      Disable memory checkpoint compression.\n'
             '-s <sshcommand>         Use <sshcommand> instead of ssh.  String will be passed\n'
             '                        to sh. If empty, run <host> instead of \n'
             '                        ssh <host> xl migrate-receive -r [-e]\n'
             '-e                      Do not wait in the background (on <host>) for the death\n'
             '                        of the domain.\n'
             '-N <netbufscript>       Use netbufscript to setup network buffering instead of the\n'
             '                        default script (/etc/xen/scripts/remus-netbuf-setup).\n'
             '-F                      Enable unsafe configurations [-b|-n|-d flags]. Use this option\n'
             '                        with caution as failover may not work as intended.\n'
             '-b                      Replicate memory checkpoints to /dev/null (blackhole).\n'
             '                        Works only in unsafe mode.\n'
             '-n                      Disable network output buffering. Works only in unsafe mode.\n'
             '-d                      Disable disk replication. Works only in unsafe mode.\n'
             '-c                      Enable COLO HA. It is conflict with -i and -b, and memory\n'
             '                        checkpoint must be disabled.\n'
             '-p                      Use COLO userspace proxy.'),
            'Fbundi:s:N:ecp', None, 2),
    # main_devd
    Command('devd', 'pyxl.cli.devd:devd', False, True,
            'Daemon that listens for devices and launches backends',
            '[options]',
            ('-F                      Run in the foreground.\n'
             '-p, --pidfile [FILE]    Write PID to pidfile when daemonizing.'),
            'Fp:', (('pidfile', 1, 'p'),), 0),
    # main_psr_hwinfo
    Command('psr-hwinfo', 'pyxl.cli.impossible:psr_hwinfo', False, True,
            'Show hardware information for Platform Shared Resource',
            '[options]',
            ('-m, --cmt       Show Cache Monitoring Technology (CMT) hardware info\n'
             '-a, --cat       Show Cache Allocation Technology (CAT) hardware info\n'
             '-b, --mba       Show Memory Bandwidth Allocation (MBA) hardware info\n'),
            'mab', (('cmt', 0, 'm'), ('cat', 0, 'a'), ('mba', 0, 'b')), 0),
    # main_psr_cmt_attach
    Command('psr-cmt-attach', 'pyxl.cli.impossible:psr_cmt_attach', False, True,
            'Attach Cache Monitoring Technology service to a domain',
            '<Domain>',
            None,
            '', None, 1),
    # main_psr_cmt_detach
    Command('psr-cmt-detach', 'pyxl.cli.impossible:psr_cmt_detach', False, True,
            'Detach Cache Monitoring Technology service from a domain',
            '<Domain>',
            None,
            '', None, 1),
    # main_psr_cmt_show
    Command('psr-cmt-show', 'pyxl.cli.impossible:psr_cmt_show', False, True,
            'Show Cache Monitoring Technology information',
            '<PSR-CMT-Type> <Domain>',
            ('Available monitor types:\n'
             '"cache-occupancy":         Show L3 cache occupancy(KB)\n'
             '"total-mem-bandwidth":     Show total memory bandwidth(KB/s)\n'
             '"local-mem-bandwidth":     Show local memory bandwidth(KB/s)\n'),
            '', None, 1),
    # main_psr_cat_cbm_set
    Command('psr-cat-set', 'pyxl.cli.impossible:psr_cat_set', False, True,
            'Set cache capacity bitmasks(CBM) for a domain',
            '[options] <Domain> <CBM>',
            ('-s <socket>       Specify the socket to process, otherwise all sockets are processed\n'
             '-l <level>        Specify the cache level to process, otherwise L3 cache is processed\n'
             '-c                Set code CBM if CDP is supported\n'
             '-d                Set data CBM if CDP is supported\n'),
            's:l:cd', (('socket', 1, 's'), ('data', 0, 'd'), ('code', 0, 'c'), ('level', 1, 'l')), 2),
    # main_psr_cat_show
    Command('psr-cat-show', 'pyxl.cli.impossible:psr_cat_show', False, True,
            'Show Cache Allocation Technology information',
            '[options] <Domain>',
            '-l <level>        Specify the cache level to process, otherwise L3 cache is processed\n',
            'l:', (('level', 1, 'l'),), 0),
    # main_psr_mba_set
    Command('psr-mba-set', 'pyxl.cli.impossible:psr_mba_set', False, True,
            'Set throttling value (THRTL) for a domain',
            '[options] <Domain> <THRTL>',
            '-s <socket>       Specify the socket to process, otherwise all sockets are processed\n',
            's:', (('socket', 1, 's'),), 0),
    # main_psr_mba_show
    Command('psr-mba-show', 'pyxl.cli.impossible:psr_mba_show', False, True,
            'Show Memory Bandwidth Allocation information',
            '<Domain>',
            None,
            '', None, 0),
    # main_usbctrl_attach
    Command('usbctrl-attach', 'pyxl.cli.usb:usbctrl_attach', False, True,
            'Create a virtual USB controller for a domain',
            '<Domain> [type=pv] [version=<version>] [ports=<number>]',
            None,
            '', None, 1),
    # main_usbctrl_detach
    Command('usbctrl-detach', 'pyxl.cli.usb:usbctrl_detach', False, True,
            'Remove the virtual USB controller specified by <DevId> for a domain',
            '<Domain> <DevId>',
            None,
            '', None, 2),
    # main_usbdev_attach
    Command('usbdev-attach', 'pyxl.cli.usb:usbdev_attach', False, True,
            'Attach a USB device to a domain',
            '<Domain> hostbus=<busnum> hostaddr=<devnum> [controller=<DevId> [port=<port>]]',
            None,
            '', None, 2),
    # main_usbdev_detach
    Command('usbdev-detach', 'pyxl.cli.usb:usbdev_detach', False, True,
            'Detach a USB device from a domain',
            '<Domain> <controller> <port>',
            None,
            '', None, 3),
    # main_usblist
    Command('usb-list', 'pyxl.cli.usb:usb_list', False, False,
            'List information about all USB controllers and devices for a domain',
            '<Domain>',
            None,
            '', None, 1),
    # main_qemu_monitor_command
    Command('qemu-monitor-command', 'pyxl.cli.impossible:qemu_monitor_command', False, True,
            'Issue a qemu monitor command to the device model of a domain',
            '<Domain> <Command>',
            None,
            '', None, 2),

    # pyxl's own commands: the simulated host's daemons and debugging aids.
    # xenstore-*: Xen's tools/xenstore/xenstore_client.c, over the xenstored socket
    Command("xenstore-ls", "pyxl.cli.xenstore:xenstore_ls", False, False,
            "List a xenstore subtree with values (and permissions with -p)",
            "[-h] [-f] [-p] [-s] [path]", None, None, None, 0, xl=False),
    Command("xenstore-read", "pyxl.cli.xenstore:xenstore_read", False, False,
            "Read xenstore values",
            "[-h] [-p] [-s] [-R] key [...]", None, None, None, 0, xl=False),
    Command("xenstore-write", "pyxl.cli.xenstore:xenstore_write", False, True,
            "Write xenstore values (escapes as \\t \\x41 \\101 unless -R)",
            "[-h] [-s] [-R] key value [...]", None, None, None, 0, xl=False),
    Command("xenstore-rm", "pyxl.cli.xenstore:xenstore_rm", False, True,
            "Remove xenstore nodes (and empty parents with -t)",
            "[-h] [-s] [-t] key [...]", None, None, None, 0, xl=False),
    Command("xenstore-list", "pyxl.cli.xenstore:xenstore_list", False, False,
            "List the children of xenstore nodes",
            "[-h] [-p] [-s] key [...]", None, None, None, 0, xl=False),
    Command("xenstore-exists", "pyxl.cli.xenstore:xenstore_exists", False, False,
            "Exit 0 if every xenstore node exists, 1 otherwise",
            "[-h] [-p] [-s] key [...]", None, None, None, 0, xl=False),
    Command("xenstore-chmod", "pyxl.cli.xenstore:xenstore_chmod", False, True,
            "Set the permissions of a xenstore node (-u: and its parents, -r: and its children)",
            "[-h] [-u] [-r] [-s] key <mode [modes...]>", None, None, None, 0, xl=False),
    Command("xenstore-watch", "pyxl.cli.xenstore:xenstore_watch", False, False,
            "Print the paths of xenstore watch events (-n: stop after NR)",
            "[-h] [-n NR] key", None, None, None, 0, xl=False),
    Command("daemon", "pyxl.cli.daemon:daemon", False, True,
            "Run, query or stop the simulated host's daemon",
            "<start|stop|status> [options]",
            ("-F, --foreground        start: run in the foreground (for a service manager)\n"
             "--force                 stop: destroy every domain first"),
            "F", (("foreground", 0, "F"), ("force", 0, 0x100)), 1, xl=False, selfparse=True),
    Command("tpm-serve", "pyxl.cli.tpm:tpm_serve", False, False,
            "Serve a TPM 1.2 (or with --tpm2 a TPM 2.0) engine on a raw TCP or Unix socket",
            "--state DIR [--port P] [--unix PATH] [options]", None, None, None, 0, xl=False,
            typer=True),
)

XL_COMMANDS = tuple(c for c in COMMANDS if c.xl)
BY_NAME = {c.name: c for c in COMMANDS}


def lookup(name: str | None) -> Command | None:
    """xl's cmdtable_lookup (tools/xl/xl_cmdtable.c) over xl's commands: an
    exact name, else a prefix of exactly one command; then pyxl's own
    commands by their full name, so every abbreviation means what it means
    to xl ("pyxl de" is as ambiguous as "xl de")."""
    if name is None:
        return None
    hit: Command | None = None
    count = 0
    for c in XL_COMMANDS:
        if c.name.startswith(name):
            if len(name) == len(c.name):
                return c
            hit, count = c, count + 1
    if count == 1:
        return hit
    own = BY_NAME.get(name)
    return own if own is not None and not own.xl else None
