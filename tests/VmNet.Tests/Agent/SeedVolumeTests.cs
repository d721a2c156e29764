using System.Text;
using VmNet.GuestAgent.Config;
using VmNet.Seed;
using VmNet.Tests.Support;

namespace VmNet.Tests.Agent;

/// <summary>The agent reads its config from the seed the launcher writes (its own ISO 9660 + Joliet writer), unmounted.</summary>
public sealed class SeedVolumeTests
{
    private static readonly string Sample = File.ReadAllText(Repo.File("guest-agent/agent.sample.json"));

    private static byte[] Seed(string label, params (string Name, string Content)[] files)
    {
        using var ms = new MemoryStream();
        IsoImageWriter.Write(ms, label, files.Select(f => new IsoFile(f.Name, Encoding.UTF8.GetBytes(f.Content))).ToList());
        return ms.ToArray();
    }

    [Fact]
    public void The_agent_finds_its_config_on_the_cidata_seed_by_its_joliet_name()
    {
        var iso = Seed(SeedImage.VolumeLabel, ("meta-data", "instance-id: x\n"), ("user-data", "#cloud-config\n"), (ConfigLoader.SeedFile, Sample));

        Assert.Equal(Sample, SeedVolume.Read(new MemoryStream(iso), ConfigLoader.SeedFile));
        Assert.Equal("#cloud-config\n", SeedVolume.Read(new MemoryStream(iso), "user-data"));
        Assert.Null(SeedVolume.Read(new MemoryStream(iso), "vmnet/other.json"));
        Assert.Null(SeedVolume.Read(new MemoryStream(iso), "vmnet")); // a directory is not a file
    }

    [Fact]
    public void A_volume_with_another_label_or_no_iso_9660_at_all_is_not_the_seed()
    {
        Assert.Null(SeedVolume.Read(new MemoryStream(Seed("config-2", (ConfigLoader.SeedFile, Sample))), ConfigLoader.SeedFile));
        Assert.Null(SeedVolume.Read(new MemoryStream(new byte[64 * 1024]), ConfigLoader.SeedFile));
        Assert.Null(SeedVolume.Read(new MemoryStream(new byte[100]), ConfigLoader.SeedFile));
    }

    [Fact]
    public void The_loader_looks_at_the_block_devices_last_cd_roms_first()
    {
        using var root = new TempDir();
        Directory.CreateDirectory(root["sys/class/block/sda"]);
        Directory.CreateDirectory(root["sys/class/block/sr0"]);
        Directory.CreateDirectory(root["sys/class/block/vda"]);
        Directory.CreateDirectory(root["dev"]);
        File.WriteAllBytes(root["dev/sda"], new byte[4096]);
        File.WriteAllBytes(root["dev/sr0"], Seed(SeedImage.VolumeLabel, (ConfigLoader.SeedFile, Sample)));
        File.WriteAllBytes(root["dev/vda"], new byte[4096]);

        var found = ConfigLoader.Load(new VmNet.GuestAgent.Host.HostFiles(root.Path), null, root.Path);

        Assert.NotNull(found);
        Assert.Equal($"{root["dev/sr0"]} (cidata):vmnet/agent.json", found.Value.Source);
        Assert.Equal("ceph-osd-1", found.Value.Config.Hostname);
        Assert.Equal([root["dev/sr0"], root["dev/vda"]], SeedVolume.Candidates(root.Path));
    }

    [Fact]
    public void A_config_installed_in_etc_wins_over_the_seed()
    {
        using var root = new TempDir();
        Directory.CreateDirectory(root["sys/class/block/sr0"]);
        Directory.CreateDirectory(root["etc/vmnet"]);
        Directory.CreateDirectory(root["dev"]);
        File.WriteAllBytes(root["dev/sr0"], Seed(SeedImage.VolumeLabel, (ConfigLoader.SeedFile, Sample)));
        File.WriteAllText(root["etc/vmnet/agent.json"], Sample.Replace("ceph-osd-1", "from-etc"));

        var found = ConfigLoader.Load(new VmNet.GuestAgent.Host.HostFiles(root.Path), null, root.Path);

        Assert.Equal(("/etc/vmnet/agent.json", "from-etc"), (found?.Source, found?.Config.Hostname));
    }
}
