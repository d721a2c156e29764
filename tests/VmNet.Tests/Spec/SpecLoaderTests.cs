using VmNet.Spec;
using VmNet.Tests.Support;

namespace VmNet.Tests.Spec;

public class SpecLoaderTests
{
    private const string Minimal = """
        name: vm1
        disk: {image: /img.qcow2}
        networks:
          - name: storage
            ports: [enp3s0f0np0, enp3s0f1np1]
            address: 192.168.40.11/24
        """;

    [Fact]
    public void A_minimal_spec_gets_the_documented_defaults()
    {
        var vm = SpecLoader.Load(Minimal);

        Assert.Equal(Defaults.Cpus, vm.Cpus);
        Assert.Equal(2048, vm.MemoryMiB);
        Assert.Equal(Backend.Libvirt, vm.Backend);
        Assert.Equal(Accel.Kvm, vm.Accel);
        Assert.Equal("vm1", vm.Guest.Hostname);
        Assert.Equal("vmnet", vm.Guest.User);
        var n = Assert.Single(vm.Networks);
        Assert.Null(n.Vlan);
        Assert.True(n.SpoofCheck);
        Assert.False(n.Trust);
        Assert.Equal(LinkState.Auto, n.LinkState);
        Assert.Null(n.Rates);
        Assert.Null(n.Macs);
        Assert.Equal(100, n.Bond.Miimon);
        Assert.Equal(0, n.Bond.ArpInterval);
        Assert.Equal(200, n.Bond.UpDelay);
        Assert.Equal(3, n.Bond.GratuitousArp);
        Assert.Equal("enp3s0f0np0", n.Bond.Primary);
        Assert.Equal(PrimaryReselect.Always, n.Bond.PrimaryReselect);
        Assert.Equal(["storage0", "storage1"], [n.MemberName(0), n.MemberName(1)]);
        Assert.Equal(new PlacementSpec(NumaPolicy.Nic, CpuPinning.Shared, 0), vm.Placement);
    }

    [Theory]
    [InlineData("{numa: preferred, cpuPinning: dedicated, hugepages: 2MiB}", NumaPolicy.Preferred, CpuPinning.Dedicated, 2048)]
    [InlineData("{hugepages: 1GiB}", NumaPolicy.Nic, CpuPinning.Shared, 1048576)]
    [InlineData("{numa: any}", NumaPolicy.Any, CpuPinning.Shared, 0)]
    public void Placement_is_read_with_its_defaults(string yaml, NumaPolicy numa, CpuPinning pinning, long hugeKiB) =>
        Assert.Equal(new PlacementSpec(numa, pinning, hugeKiB), SpecLoader.Load(Minimal + "\nplacement: " + yaml).Placement);

    [Fact]
    public void The_reference_file_parses_and_its_values_are_the_built_in_defaults()
    {
        var reference = SpecLoader.LoadFile(Repo.File("templates/vm.reference.yaml"));
        var minimal = SpecLoader.Load(Minimal.Replace("vm1", reference.Name).Replace("/img.qcow2", reference.Disk.Image));

        Assert.Equal(minimal.Cpus, reference.Cpus);
        Assert.Equal(minimal.MemoryMiB, reference.MemoryMiB);
        Assert.Equal(minimal.Backend, reference.Backend);
        Assert.Equal(minimal.Accel, reference.Accel);
        Assert.Equal(minimal.Autostart, reference.Autostart);
        Assert.Equal(minimal.Placement, reference.Placement);
        Assert.Equal(minimal.Guest.Hostname, reference.Guest.Hostname);
        Assert.Equal(minimal.Guest.User, reference.Guest.User);
        var (r, m) = (reference.Networks[0], minimal.Networks[0]);
        Assert.Null(m.Vlan);
        Assert.Equal(new VlanTag(r.Vlan!.Id), r.Vlan); // qos 0 and 802.1Q, as without those keys
        Assert.Null(m.Rates);
        Assert.Equal(new TxRates(0, 0), r.Rates); // written out as 0: no limit, no guarantee
        Assert.Equal(m.SpoofCheck, r.SpoofCheck);
        Assert.Equal(m.Trust, r.Trust);
        Assert.Equal(m.LinkState, r.LinkState);
        Assert.Equal(m.Bond, r.Bond with { ArpTargets = m.Bond.ArpTargets });
        Assert.Empty(r.Bond.ArpTargets);
    }

    [Fact]
    public void The_shipped_example_is_valid() =>
        Assert.Equal(2, SpecLoader.LoadFile(Repo.File("examples/vm.yaml")).Networks.Count);

    public static TheoryData<string> BadSpecs() =>
        new(Directory.GetFiles(Repo.File("tests/VmNet.Tests/VmYaml/bad"), "*.yaml").Select(Path.GetFileName).Order()!);

    /// <summary>
    /// Each file of the corpus starts with its expected errors (<c># expect: ...</c>): every one must be reported (an
    /// expectation without a position matches any), and nothing else.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadSpecs))]
    public void A_bad_spec_is_refused_with_every_problem_and_its_field_path(string file)
    {
        var path = Repo.File(Path.Join("tests/VmNet.Tests/VmYaml/bad", file));
        var expected = File.ReadLines(path).Where(l => l.StartsWith("# expect: ", StringComparison.Ordinal))
            .Select(l => l["# expect: ".Length..]).ToList();
        Assert.NotEmpty(expected);

        var e = Assert.Throws<SpecException>(() => SpecLoader.LoadFile(path));

        Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
        var actual = e.Errors.Select(x => x.ToString()).ToList();
        foreach (var want in expected)
            Assert.Contains(actual, a => want.Contains("(line", StringComparison.Ordinal) ? a == want : a.StartsWith(want, StringComparison.Ordinal));
        Assert.Equal(expected.Count, actual.Count);
    }

    [Fact]
    public void Every_error_is_in_the_message_with_the_file_name()
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load("name: X\ncpus: 0\n", "my.yaml"));

        Assert.StartsWith("my.yaml: 4 problems:", e.Message);
        Assert.Contains("  cpus: must be 1..512 vCPUs, got 0 (line 2, column 7)", e.Message);
    }

    [Fact]
    public void A_yaml_syntax_error_names_its_line_and_column()
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load("name: vm1\nnetworks: [\n  - a: b\n"));

        var error = Assert.Single(e.Errors);
        Assert.Equal("(yaml)", error.Path);
        Assert.NotNull(error.Line);
        Assert.DoesNotContain("Idx:", error.Message);
    }

    [Theory]
    [InlineData("vlna", "vlan")]
    [InlineData("spoofcheck", "spoofCheck")]
    [InlineData("adress", "address")]
    [InlineData("maxtxrate", "maxTxRate")]
    public void An_unknown_key_suggests_the_closest_known_one(string typo, string suggestion)
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load(Minimal + $"\n    {typo}: 1\n"));

        Assert.Contains(e.Errors, x => x.Path == $"networks[0].{typo}" && x.Message == $"unknown key; did you mean \"{suggestion}\"?");
    }

    [Fact]
    public void A_key_far_from_every_known_one_lists_the_known_keys()
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load(Minimal + "\nzzzzzzzz: 1\n"));

        Assert.Contains(e.Errors, x => x.Path == "zzzzzzzz" && x.Message.StartsWith("unknown key; known keys here: accel, autostart, backend", StringComparison.Ordinal));
    }

    [Fact]
    public void Arp_monitoring_replaces_miimon_and_drops_the_default_up_delay()
    {
        var vm = SpecLoader.Load(Minimal + "\n    bond: {arpInterval: 100, arpTargets: [192.168.40.1]}\n");

        var bond = vm.Networks[0].Bond;
        Assert.Equal((0, 100, 0), (bond.Miimon, bond.ArpInterval, bond.UpDelay));
        Assert.Equal(["192.168.40.1"], bond.ArpTargets);
    }

    [Theory]
    [InlineData("memory: 16GiB", 16384)]
    [InlineData("memory: 512MiB", 512)]
    public void Memory_is_read_in_mebibytes(string line, int mib) =>
        Assert.Equal(mib, SpecLoader.Load(Minimal + "\n" + line + "\n").MemoryMiB);

    [Fact]
    public void Explicit_macs_are_kept_lowercase()
    {
        var vm = SpecLoader.Load(Minimal + "\n    macs: [02:AA:00:00:00:01, 02:AA:00:00:00:02]\n");

        Assert.Equal(["02:aa:00:00:00:01", "02:aa:00:00:00:02"], vm.Networks[0].Macs!);
    }

    [Fact]
    public void A_mac_used_twice_in_one_vm_is_refused()
    {
        var e = Assert.Throws<SpecException>(() => SpecLoader.Load(Minimal
            + "\n    macs: [02:00:00:00:00:01, 02:00:00:00:00:02]\n  - name: b\n    ports: [enp3s0f0np0]\n    address: dhcp\n    macs: [02:00:00:00:00:02]\n"));

        Assert.Contains(e.Errors, x => x.ToString() == "networks[1].macs[0]: 02:00:00:00:00:02 is already used by networks[0].macs[1]; every VF needs its own MAC");
    }
}
