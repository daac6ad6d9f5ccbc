import { smsConsentFlow } from "../agents/reception/flow.js";
import { mermaidDiagram } from "../engine/diagram.js";

/** `npm run flow:diagram`: the shipped flow as a Mermaid diagram, generated from its definition. */
console.log(mermaidDiagram(smsConsentFlow));
