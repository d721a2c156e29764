// Test folders mirror the launcher's; a test may use any other test folder's helpers (fixtures, corpora, snapshots).
global using VmNet.Tests.Agent;
global using VmNet.Tests.Backends;
global using VmNet.Tests.Boots.Guest;
global using VmNet.Tests.Boots.Lab;
global using VmNet.Tests.Cli;
global using VmNet.Tests.Execution;
global using VmNet.Tests.Host;
global using VmNet.Tests.Rendering;
global using VmNet.Tests.Rendering.Consumers;
global using VmNet.Tests.Support;
