namespace VmNet.Tests;

public class SmokeSpecs
{
    [Fact]
    public void The_cli_runs() => Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["--version"]));
}
