namespace VmNet.Tests.Cli;

public class SmokeTests
{
    [Fact]
    public void The_cli_runs() => Assert.Equal(0, VmNet.Cli.VmNetCli.Run(["--version"]));
}
