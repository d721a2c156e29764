namespace VmNet.Tests.Boots.Guest;

public sealed class PowerButtonGuest : GuestFixture
{
    protected override GuestNetwork[] Networks => [SeedOnlyGuest.Lab];
}

/// <summary>The test guest powers off on the ACPI power button, as `vmnet rm`, `vmnet down` and `virsh shutdown` press it.</summary>
[Trait(Tier.Name, Tier.Boot)]
[Collection("Guest")]
public sealed class PowerButtonTests(PowerButtonGuest fixture, ITestOutputHelper output) : IClassFixture<PowerButtonGuest>
{
    [Fact]
    public async Task The_power_button_powers_the_guest_off_and_qemu_exits()
    {
        var guest = fixture.Guest;
        var pressed = guest.Clock.Elapsed;
        await guest.Qmp("{\"execute\":\"system_powerdown\"}");
        var exited = await guest.WaitForExit(TimeSpan.FromSeconds(60));
        output.WriteLine($"QEMU exited {(guest.Clock.Elapsed - pressed).TotalSeconds:0.0} s after the button\n{QemuGuest.Tail(guest.SerialLog, 6)}");

        Assert.True(exited, $"QEMU still runs 60 s after system_powerdown:\n{QemuGuest.Tail(guest.SerialLog, 20)}");
        Assert.Contains("vmnet-init: power button, powering off", guest.SerialLog);
        Assert.Contains("reboot: Power down", guest.SerialLog);
    }
}
