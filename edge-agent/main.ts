// `fleetlm-agent --config agent.json`: not implemented yet.
console.error('fleetlm-agent: not implemented yet');
process.exitCode = 1;
