// The client suite (test/xenstore/client-suite.ts) over both transports against the sim xenstored.
import { clientSuite } from './client-suite.js';

clientSuite('sim');
